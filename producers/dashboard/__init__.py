"""The automation dashboard: a server-rendered page shell at /automation, vanilla JS over the HTTP API."""
