//go:build tools

// Package tools records the commands this tools module builds, so that `go mod tidy` keeps
// their dependencies in go.mod/go.sum. It is never compiled.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
