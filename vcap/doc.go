// Package vcap reads service bindings and turns them into typed credentials.
package vcap
