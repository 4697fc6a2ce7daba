"""The sandbox: a real Kubernetes control plane (etcd, kube-apiserver, controller-manager,
scheduler, KWOK) started as local processes, with simulated GPU nodes. Used by the e2e tests,
`make sandbox-up`, `make demo` and the benchmarks. Never imported by the operator."""
