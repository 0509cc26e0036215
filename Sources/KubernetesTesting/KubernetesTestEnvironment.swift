import Kubernetes
