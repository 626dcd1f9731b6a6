-- Report statements kept apart from queries.sql: gas per network for each report group.

-- name: report_gas
-- Gas per (group, network) over the same window and /*filters*/ as `report`: each network's gas is in
-- its own native unit (wei, lamports), so sums never cross networks.
WITH pay AS MATERIALIZED (
    SELECT pay.* FROM payments pay
    WHERE COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
          /*filters*/
)
SELECT /*group*/ AS key, pay.network, COALESCE(sum(pay.gas_cost_atomic), 0) AS gas_cost_atomic
FROM pay
GROUP BY 1, 2
ORDER BY 1, 2;
