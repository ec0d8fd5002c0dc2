"""Pointing a kube-apiserver at kaudit: certificates, webhook kubeconfig, flags, diagnosis."""
