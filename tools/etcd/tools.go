//go:build tools

// Package tools records the command this tools module builds (etcd). It is never compiled.
package tools

import _ "go.etcd.io/etcd/server/v3"
