// Package deploy holds the example's Kubernetes manifests (kubernetes/) and
// a test that checks them against the martyfx config defaults and the
// running services' admin routes. The Dockerfiles live next to each service
// (example/orders/Dockerfile, example/notifier/Dockerfile).
package deploy
