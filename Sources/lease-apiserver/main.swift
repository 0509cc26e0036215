print("lease-apiserver")
