// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatchTokens, IBatchERC3009, IDepositCollector} from "./BatchSettlementBase.sol";

/// @title ERC3009DepositCollector: worldgate's devnet implementation of x402's EIP-3009 deposit collector.
/// @notice Placed with anvil_setCode at 0x4020806089470a89826cB9fB1f4059150b550004, the address the
///         official x402 SDKs use. Only the settlement contract may call collect(); it pulls the payer's
///         tokens with receiveWithAuthorization (to = this collector) and forwards them to the caller.
/// @dev The constructor never runs under setCode, so the settlement address is a constant, not an immutable.
contract ERC3009DepositCollector is IDepositCollector {
    /// @notice x402BatchSettlement's CREATE2 address, the only caller collect() accepts.
    address public constant X402_BATCH_SETTLEMENT = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;

    error OnlyX402BatchSettlement();
    error InvalidX402BatchSettlementAddress();

    /// @notice The settlement contract this collector serves (same value as X402_BATCH_SETTLEMENT).
    function x402BatchSettlement() external pure returns (address) {
        return X402_BATCH_SETTLEMENT;
    }

    /// @param collectorData abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature):
    ///        the payer's ReceiveWithAuthorization, whose nonce is keccak256(abi.encode(channelId, salt)).
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
    {
        if (msg.sender != X402_BATCH_SETTLEMENT) {
            revert OnlyX402BatchSettlement();
        }
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(collectorData, (uint256, uint256, uint256, bytes));
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IBatchERC3009(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        BatchTokens.safeTransfer(token, msg.sender, amount);
    }
}
