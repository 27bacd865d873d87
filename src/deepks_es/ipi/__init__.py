"""i-PI coupling: the socket protocol, the DeePKS-ES client, and the server launcher."""
