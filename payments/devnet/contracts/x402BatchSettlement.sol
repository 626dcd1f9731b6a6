// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BatchSignatures, BatchTokens, IBatchERC20, IDepositCollector} from "./BatchSettlementBase.sol";

/// @title x402BatchSettlement: worldgate's own devnet implementation of x402's batch-settlement escrow.
/// @notice Written from the interface in the x402 batch-settlement specification (not copied from x402's
///         Solidity). worldgate's devnet places it with anvil_setCode at the CREATE2 address the official
///         SDKs use, 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003.
///
///         A payer escrows tokens per channel (deposit), signs cumulative vouchers off chain, and the
///         receiver side claims them (claim / claimWithSignature) and sweeps claimed funds (settle).
///         The payer can leave with a timed withdrawal; the receiver side can refund the free escrow.
/// @dev The constructor never runs under setCode: the EIP-712 domain separator is computed on every call
///      from block.chainid and address(this), and nothing is immutable. The reentrancy lock uses EIP-1153
///      transient storage, so it needs no initialisation either.
contract x402BatchSettlement {
    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    struct ChannelState {
        uint128 balance;
        uint128 totalClaimed;
    }

    struct WithdrawalState {
        uint128 amount;
        uint40 initiatedAt;
    }

    struct ReceiverState {
        uint128 totalClaimed;
        uint128 totalSettled;
    }

    struct Voucher {
        ChannelConfig channel;
        uint128 maxClaimableAmount;
    }

    struct VoucherClaim {
        Voucher voucher;
        bytes signature;
        uint128 totalClaimed;
    }

    uint40 public constant MIN_WITHDRAW_DELAY = 15 minutes;
    uint40 public constant MAX_WITHDRAW_DELAY = 30 days;

    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant CHANNEL_CONFIG_TYPEHASH = keccak256(
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 public constant REFUND_TYPEHASH = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)");
    bytes32 public constant CLAIM_ENTRY_TYPEHASH =
        keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
    bytes32 public constant CLAIM_BATCH_TYPEHASH = keccak256(
        "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    );
    bytes32 private constant NAME_HASH = keccak256("x402 Batch Settlement");
    bytes32 private constant VERSION_HASH = keccak256("1");

    mapping(bytes32 channelId => ChannelState) public channels;
    mapping(bytes32 channelId => uint256) public refundNonce;
    mapping(bytes32 channelId => WithdrawalState) public pendingWithdrawals;
    mapping(address receiver => mapping(address token => ReceiverState)) public receivers;

    bool private transient _entered;

    event ChannelCreated(bytes32 indexed channelId, ChannelConfig config);
    event ChannelClosed(bytes32 indexed channelId, ChannelConfig config);
    event Deposited(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 newBalance);
    event Claimed(bytes32 indexed channelId, address indexed sender, uint128 claimAmount, uint128 newTotalClaimed);
    event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
    event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount);
    event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 finalizeAfter);
    event WithdrawFinalized(bytes32 indexed channelId, address indexed sender, uint128 amount);

    error InvalidChannel();
    error ZeroDeposit();
    error DepositOverflow();
    error InvalidSignature();
    error NotReceiverAuthorizer();
    error NotAuthorizedToClaim();
    error NotAuthorizedToRefund();
    error ClaimExceedsCeiling();
    error ClaimExceedsBalance();
    error WithdrawalAlreadyPending();
    error WithdrawalNotPending();
    error NotAuthorizedToFinalizeWithdraw();
    error WithdrawDelayNotElapsed();
    error NothingToWithdraw();
    error WithdrawAmountExceedsAvailable();
    error WithdrawDelayOutOfRange();
    error EmptyBatch();
    error DepositCollectionFailed();
    error InvalidCollector();
    error InvalidRefundNonce();
    error ZeroRefund();
    error ReentrancyGuardReentrantCall();

    modifier nonReentrant() {
        if (_entered) {
            revert ReentrancyGuardReentrantCall();
        }
        _entered = true;
        _;
        _entered = false;
    }

    // ---- deposits ----

    /// @notice Escrow `amount` for the channel of `config`; `collector` pulls it from the payer.
    function deposit(ChannelConfig calldata config, uint128 amount, address collector, bytes calldata collectorData)
        external
        nonReentrant
    {
        if (
            config.payer == address(0) || config.receiver == address(0) || config.receiverAuthorizer == address(0)
                || config.token == address(0)
        ) {
            revert InvalidChannel();
        }
        if (config.withdrawDelay < MIN_WITHDRAW_DELAY || config.withdrawDelay > MAX_WITHDRAW_DELAY) {
            revert WithdrawDelayOutOfRange();
        }
        if (amount == 0) {
            revert ZeroDeposit();
        }
        if (collector == address(0) || collector.code.length == 0) {
            revert InvalidCollector();
        }
        bytes32 channelId = getChannelId(config);
        ChannelState storage channel = channels[channelId];
        uint256 newBalance = uint256(channel.balance) + amount;
        if (newBalance > type(uint128).max) {
            revert DepositOverflow();
        }
        channel.balance = uint128(newBalance);

        uint256 held = IBatchERC20(config.token).balanceOf(address(this));
        IDepositCollector(collector).collect(config.payer, config.token, amount, channelId, collectorData);
        if (IBatchERC20(config.token).balanceOf(address(this)) != held + amount) {
            revert DepositCollectionFailed();
        }
        if (channel.balance == amount && channel.totalClaimed == 0) {
            emit ChannelCreated(channelId, config);
        }
        emit Deposited(channelId, msg.sender, amount, channel.balance);
    }

    // ---- claims and settlement ----

    /// @notice Claim vouchers as each row's receiver or receiverAuthorizer.
    function claim(VoucherClaim[] calldata voucherClaims) external nonReentrant {
        if (voucherClaims.length == 0) {
            revert EmptyBatch();
        }
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            ChannelConfig calldata channel = voucherClaims[i].voucher.channel;
            if (msg.sender != channel.receiver && msg.sender != channel.receiverAuthorizer) {
                revert NotAuthorizedToClaim();
            }
            _claimRow(voucherClaims[i]);
        }
    }

    /// @notice Claim vouchers from anyone, with the rows' receiverAuthorizer's ClaimBatch signature.
    function claimWithSignature(VoucherClaim[] calldata voucherClaims, bytes calldata authorizerSignature)
        external
        nonReentrant
    {
        if (voucherClaims.length == 0) {
            revert EmptyBatch();
        }
        address authorizer = voucherClaims[0].voucher.channel.receiverAuthorizer;
        if (!BatchSignatures.isValidNow(authorizer, getClaimBatchDigest(voucherClaims), authorizerSignature)) {
            revert InvalidSignature();
        }
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != authorizer) {
                revert NotReceiverAuthorizer();
            }
            _claimRow(voucherClaims[i]);
        }
    }

    /// @notice Pay `receiver` everything claimed for it in `token` and not yet settled.
    function settle(address receiver, address token) external nonReentrant {
        ReceiverState storage state = receivers[receiver][token];
        uint128 owed = state.totalClaimed - state.totalSettled;
        if (owed == 0) {
            return;
        }
        state.totalSettled = state.totalClaimed;
        BatchTokens.safeTransfer(token, receiver, owed);
        emit Settled(receiver, token, msg.sender, owed);
    }

    // ---- the payer's timed withdrawal ----

    /// @notice Start a withdrawal of up to the free escrow; it can be finalized after withdrawDelay.
    function initiateWithdraw(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.payer && msg.sender != config.payerAuthorizer) {
            revert InvalidChannel();
        }
        bytes32 channelId = getChannelId(config);
        ChannelState storage channel = channels[channelId];
        uint128 available = channel.balance - channel.totalClaimed;
        if (amount == 0 || available == 0) {
            revert NothingToWithdraw();
        }
        if (pendingWithdrawals[channelId].initiatedAt != 0) {
            revert WithdrawalAlreadyPending();
        }
        if (amount > available) {
            revert WithdrawAmountExceedsAvailable();
        }
        uint40 now_ = uint40(block.timestamp);
        pendingWithdrawals[channelId] = WithdrawalState({amount: amount, initiatedAt: now_});
        emit WithdrawInitiated(channelId, amount, now_ + config.withdrawDelay);
    }

    /// @notice Pay the payer min(pending amount, free escrow now) once the delay has passed.
    function finalizeWithdraw(ChannelConfig calldata config) external nonReentrant {
        if (msg.sender != config.payer && msg.sender != config.payerAuthorizer) {
            revert NotAuthorizedToFinalizeWithdraw();
        }
        bytes32 channelId = getChannelId(config);
        WithdrawalState memory pending = pendingWithdrawals[channelId];
        if (pending.initiatedAt == 0) {
            revert WithdrawalNotPending();
        }
        if (block.timestamp < uint256(pending.initiatedAt) + config.withdrawDelay) {
            revert WithdrawDelayNotElapsed();
        }
        ChannelState storage channel = channels[channelId];
        uint128 free = channel.balance - channel.totalClaimed;
        uint128 amount = pending.amount < free ? pending.amount : free;
        delete pendingWithdrawals[channelId];
        channel.balance -= amount;
        emit WithdrawFinalized(channelId, msg.sender, amount);
        if (channel.balance == 0 && channel.totalClaimed == 0) {
            emit ChannelClosed(channelId, config);
        }
        if (amount > 0) {
            BatchTokens.safeTransfer(config.token, config.payer, amount);
        }
    }

    // ---- cooperative refunds ----

    /// @notice Refund up to `amount` of the free escrow to the payer, as receiver or receiverAuthorizer.
    function refund(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) {
            revert NotAuthorizedToRefund();
        }
        _refund(config, getChannelId(config), amount);
    }

    /// @notice Refund from anyone, with the receiverAuthorizer's signature over (channelId, nonce, amount).
    function refundWithSignature(
        ChannelConfig calldata config,
        uint128 amount,
        uint256 nonce,
        bytes calldata receiverAuthorizerSignature
    ) external nonReentrant {
        bytes32 channelId = getChannelId(config);
        if (nonce != refundNonce[channelId]) {
            revert InvalidRefundNonce();
        }
        bytes32 digest = getRefundDigest(channelId, nonce, amount);
        if (!BatchSignatures.isValidNow(config.receiverAuthorizer, digest, receiverAuthorizerSignature)) {
            revert InvalidSignature();
        }
        _refund(config, channelId, amount);
    }

    // ---- batching ----

    /// @notice Run several calls on this contract atomically (each through delegatecall to itself).
    function multicall(bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i = 0; i < data.length; i++) {
            (bool ok, bytes memory answer) = address(this).delegatecall(data[i]);
            if (!ok) {
                assembly {
                    revert(add(answer, 0x20), mload(answer))
                }
            }
            results[i] = answer;
        }
    }

    // ---- views ----

    /// @notice The EIP-712 domain separator on this chain at this address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice EIP-5267 domain description.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "x402 Batch Settlement", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice The channel id: the EIP-712 digest of the ChannelConfig struct.
    function getChannelId(ChannelConfig calldata config) public view returns (bytes32) {
        // ChannelConfig has only static fields, so abi.encode(config) is its fields word by word.
        return _hashTypedData(keccak256(abi.encode(CHANNEL_CONFIG_TYPEHASH, config)));
    }

    function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) public view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, maxClaimableAmount)));
    }

    function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) public view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(REFUND_TYPEHASH, channelId, nonce, amount)));
    }

    /// @notice The digest a receiverAuthorizer signs for claimWithSignature: ClaimBatch(ClaimEntry[] claims).
    function getClaimBatchDigest(VoucherClaim[] calldata voucherClaims) public view returns (bytes32) {
        bytes32[] memory entries = new bytes32[](voucherClaims.length);
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            VoucherClaim calldata row = voucherClaims[i];
            entries[i] = keccak256(
                abi.encode(
                    CLAIM_ENTRY_TYPEHASH, getChannelId(row.voucher.channel), row.voucher.maxClaimableAmount, row.totalClaimed
                )
            );
        }
        return _hashTypedData(keccak256(abi.encode(CLAIM_BATCH_TYPEHASH, keccak256(abi.encodePacked(entries)))));
    }

    // ---- internals ----

    function _hashTypedData(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    /// @dev One claim row: skip if not above the current total, else check ceiling, balance and voucher.
    function _claimRow(VoucherClaim calldata row) private {
        ChannelConfig calldata config = row.voucher.channel;
        bytes32 channelId = getChannelId(config);
        ChannelState storage channel = channels[channelId];
        uint128 current = channel.totalClaimed;
        if (row.totalClaimed <= current) {
            return;
        }
        if (row.totalClaimed > row.voucher.maxClaimableAmount) {
            revert ClaimExceedsCeiling();
        }
        if (row.totalClaimed > channel.balance) {
            revert ClaimExceedsBalance();
        }
        bytes32 digest = getVoucherDigest(channelId, row.voucher.maxClaimableAmount);
        bool valid = config.payerAuthorizer != address(0)
            ? BatchSignatures.isValidECDSA(config.payerAuthorizer, digest, row.signature)
            : BatchSignatures.isValidNow(config.payer, digest, row.signature);
        if (!valid) {
            revert InvalidSignature();
        }
        uint128 delta = row.totalClaimed - current;
        channel.totalClaimed = row.totalClaimed;
        receivers[config.receiver][config.token].totalClaimed += delta;
        emit Claimed(channelId, msg.sender, delta, row.totalClaimed);
    }

    /// @dev The refund rule: bump the nonce, cap to the free escrow, shrink a pending withdrawal, pay the payer.
    function _refund(ChannelConfig calldata config, bytes32 channelId, uint128 amount) private {
        if (amount == 0) {
            revert ZeroRefund();
        }
        refundNonce[channelId]++;
        ChannelState storage channel = channels[channelId];
        uint128 free = channel.balance - channel.totalClaimed;
        uint128 refunded = amount < free ? amount : free;
        if (refunded == 0) {
            return;
        }
        channel.balance -= refunded;
        WithdrawalState storage pending = pendingWithdrawals[channelId];
        if (pending.initiatedAt != 0) {
            if (refunded >= pending.amount) {
                delete pendingWithdrawals[channelId];
            } else {
                pending.amount -= refunded;
            }
        }
        emit Refunded(channelId, msg.sender, refunded);
        if (channel.balance == 0 && channel.totalClaimed == 0) {
            emit ChannelClosed(channelId, config);
        }
        BatchTokens.safeTransfer(config.token, config.payer, refunded);
    }
}
