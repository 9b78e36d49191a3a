package guard

import "errors"

// ErrSetup wraps problems New finds while loading what the config names
// (files, bindings, certificates); the message names the rule field.
var ErrSetup = errors.New("guard: cannot set up the inbound guard")

// ErrConfig is wrapped by every *FieldError.
var ErrConfig = errors.New("invalid inbound configuration")
