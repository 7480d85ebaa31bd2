module kmatrix.invalid/ollama-mptcp

// kmatrix rewrites this line per version and vendors Debian's Go libraries.
go 1.24
