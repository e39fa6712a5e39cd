"""Real nodes' command outputs, published by others, and what each one must show."""
