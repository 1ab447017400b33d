// Filled in by the browser client.
