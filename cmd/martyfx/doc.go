// Command martyfx scaffolds new martyfx services. In a clone of martyfx,
//
//	go run ./cmd/martyfx new billing --kind grpc --with-db --with-events --dir ../billing
//
// writes a Go module that already builds, passes its tests and deploys: go.mod
// requiring martyfx, main.go with martyfx.Run, an internal package wiring the
// service (gRPC server and/or HTTP routes, an optional repository with
// migrations, an optional event and handler), tests on fxtest, a proto with
// buf config and its generated Go code (gRPC kinds), a Dockerfile, Kubernetes
// manifests with probes, a README and a .ci/run script.
//
// A development build like that one (version "(devel)" or a local
// pseudo-version) replaces martyfx in the new go.mod with the checkout it was
// built from, and says so; a released build (go run
// github.com/martyfx/martyfx/cmd/martyfx@vX.Y.Z, once published) requires its
// own version.
//
// Subcommands: new, version, help. `martyfx new --help` lists the kinds and
// flags. See README.md.
package main
