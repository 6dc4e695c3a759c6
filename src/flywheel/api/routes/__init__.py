"""One router per resource; each is authenticated at the router level."""
