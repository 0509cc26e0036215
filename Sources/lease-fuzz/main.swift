print("lease-fuzz: not built yet")
