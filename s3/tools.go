//go:build tools

// Package tools records the SeaweedFS `weed` command as a dependency of this
// module, so go.mod/go.sum pin it. Nothing here is compiled into sessionlake;
// scripts/s3 runs `go build github.com/seaweedfs/seaweedfs/weed` in this dir.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
