// Command martyfx scaffolds new martyfx services.
//
//	go run github.com/martyfx/martyfx/cmd/martyfx new billing --kind grpc --with-db --with-events
//
// writes a Go module that already builds, passes its tests and deploys: go.mod
// requiring martyfx, main.go with martyfx.Run, an internal package wiring the
// service (gRPC server and/or HTTP routes, an optional repository with
// migrations, an optional event and handler), tests on fxtest, a proto with
// buf config and its generated Go code (gRPC kinds), a Dockerfile, Kubernetes
// manifests with probes, a README and a .ci/run script.
//
// Subcommands: new, version, help. `martyfx new --help` lists the kinds and
// flags. See README.md.
package main
