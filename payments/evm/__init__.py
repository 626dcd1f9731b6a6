"""payments/evm"""
