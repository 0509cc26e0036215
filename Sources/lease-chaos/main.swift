print("lease-chaos: not built yet")
