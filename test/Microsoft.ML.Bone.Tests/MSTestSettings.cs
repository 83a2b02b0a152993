// Tests share one libtorch; most are numeric and quick, so run classes in parallel on the CI machine's two cores.
[assembly: Parallelize(Workers = 2, Scope = ExecutionScope.ClassLevel)]
