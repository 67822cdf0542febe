//go:build tools

// Package tools pins the Helm CLI (helm.sh/helm/v4/cmd/helm) in this module's
// go.mod/go.sum; scripts/install-helm.sh builds it from here.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
