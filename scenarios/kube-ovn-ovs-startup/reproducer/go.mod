module kmatrix.invalid/kube-ovn-ovs-startup

// kmatrix rewrites this line per version.
go 1.22
