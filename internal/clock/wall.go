package clock

// WallNano returns the system wall clock (CLOCK_REALTIME) in Unix
// nanoseconds, never later than the true time. It is for hit paths that
// must compare an expiry with the wall clock on every call: unlike the
// monotonic clock (which Go timers and time.Since use, and which stops
// while the host is suspended), the wall clock counts a suspend, so a
// token or certificate whose time passed during one is seen as expired on
// the first call after the resume.
//
// It reads only the wall clock: time.Now reads the monotonic clock as
// well, which costs a second clock read. On linux/amd64 it is one vDSO
// call of gettimeofday (microseconds, rounded down); elsewhere time.Now.
func WallNano() int64 { return wallNano() }
