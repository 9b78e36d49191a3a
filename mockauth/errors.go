package mockauth

import "errors"

// ErrUnknownSerial is returned by Revoke for a serial the connector never
// issued.
var ErrUnknownSerial = errors.New("mockauth: no certificate with this serial was issued")

// ErrUnknownCertificate is returned by RevokeSHA256 for a fingerprint the
// connector never issued.
var ErrUnknownCertificate = errors.New("mockauth: no certificate with this SHA-256 fingerprint was issued")

// ErrCARotation is returned by the connector CA rotation methods when the
// mock was started without Options.ConnectorCARotation, or when a step
// does not apply (nothing to switch to, nothing to remove).
var ErrCARotation = errors.New("mockauth: connector CA rotation")
