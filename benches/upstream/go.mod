module github.com/tiergate/tiergate/benches/upstream

go 1.26.0
