//go:build !failpoint

package failpoint

// Enabled says that this binary was built with the failpoints.
const Enabled = false

// Hit does nothing: the failpoints are built only with the tag failpoint.
func Hit(string) {}
