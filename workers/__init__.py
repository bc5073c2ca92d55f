"""What runs in RQ: thin job functions that open an app context and call the domain code."""
