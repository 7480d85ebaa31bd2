module kmatrix.invalid/calico-xdp

// kmatrix rewrites this line per version and vendors Debian's Go libraries.
go 1.21
