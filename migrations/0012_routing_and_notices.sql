-- Issue 17, routing and notices (docs/revenue-recovery.md §2, §3, §7): an offer's distribution
-- and strategy, a contract's weight and its win and loss notice URLs, and the routing a ping
-- ran with (NULL: the defaults, auction/price, so a default ping writes nothing more).
ALTER TABLE offers
    ADD COLUMN distribution text NOT NULL DEFAULT 'auction'
        CHECK (distribution IN ('auction', 'waterfall')),
    ADD COLUMN strategy text NOT NULL DEFAULT 'price'
        CHECK (strategy IN ('price', 'round_robin', 'weighted'));

ALTER TABLE contracts
    ADD COLUMN weight int NOT NULL DEFAULT 100 CHECK (weight BETWEEN 0 AND 1000),
    ADD COLUMN win_url text CHECK (length(win_url) <= 2000),
    ADD COLUMN loss_url text CHECK (length(loss_url) <= 2000);

ALTER TABLE posting_log ADD COLUMN routing text;
