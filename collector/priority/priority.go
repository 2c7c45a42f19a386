// Package priority lowers the collector's CPU and disk priority, so a triage
// collection on a production host does not slow down the work it is there to
// investigate.
package priority

// Nice is the Unix nice value the collector runs at.
const Nice = 10
