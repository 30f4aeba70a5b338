//go:build tools

// Package tools pins the kwok command the test bed builds, so that go.sum covers it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
