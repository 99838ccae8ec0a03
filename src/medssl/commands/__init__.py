"""One module per command: its checks that need files (`resolve`), then the run. `lifecycle`
holds what every run-folder command shares (claim, open, data record, positive class)."""
