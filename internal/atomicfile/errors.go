package atomicfile

import "errors"

// ErrBadName is returned for a file name that is empty, contains a path
// separator or starts with "..".
var ErrBadName = errors.New("atomicfile: bad file name")

// ErrUnsafeLayout is returned when dir's "..data" is a link to anything but
// a generation directory inside dir.
var ErrUnsafeLayout = errors.New("atomicfile: ..data does not point to a generation directory inside the directory; not following it")
