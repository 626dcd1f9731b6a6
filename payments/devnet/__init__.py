"""payments/devnet"""
