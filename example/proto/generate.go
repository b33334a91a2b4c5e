// Package proto holds the example's protobuf sources; `go generate
// ./example/...` regenerates the Go code in example/gen with buf and the
// protoc-gen-go, protoc-gen-go-grpc and protoc-gen-grpc-gateway plugins, all
// at pinned versions through `go run` (no protoc, no installs, no network
// beyond the Go module proxy).
package proto

//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate
