package fxgrpc

// CloseListener closes the server's listener from under it, as a dying
// network would.
func CloseListener(s *Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lis.Close()
}
