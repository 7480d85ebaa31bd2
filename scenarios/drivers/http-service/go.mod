module kmatrix.invalid/caddy-mptcp

go 1.24
