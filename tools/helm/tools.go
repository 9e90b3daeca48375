//go:build tools

// Package tools records the command this tools module builds (helm). It is never compiled.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
