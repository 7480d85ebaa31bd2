module kmatrix.invalid/http-service

go 1.24
