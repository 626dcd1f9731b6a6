"""The `exact` scheme on Solana (SVM): programs, the paying side, the verifier and settler, JSON-RPC."""
