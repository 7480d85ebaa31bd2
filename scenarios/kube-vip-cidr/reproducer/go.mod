module kmatrix.invalid/kube-vip-cidr

// kmatrix rewrites this line per version and vendors Debian's Go libraries.
go 1.23
