module kmatrix.invalid/kube-ovn-tproxy

// kmatrix rewrites this line per component version (the release's own go.mod line).
go 1.24
