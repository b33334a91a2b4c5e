package fxevents

// Internals the external tests check against Postgres.
var (
	ClaimQuery      = claimQuery
	RelayTxSettings = relayTxSettings
	MaintainDelay   = maintainDelay
	Backoff         = backoff
)
