-- The target table of config/docker.toml's "orders" pipeline.
CREATE TABLE IF NOT EXISTS public.orders (
    order_id   bigint PRIMARY KEY,
    customer   text,
    amount     numeric(12, 2),
    status     text,
    updated_at timestamptz DEFAULT now()
);
