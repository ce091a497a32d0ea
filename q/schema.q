/ margintick table schemas: the single source of truth, in q syntax (load it in q with \l q/schema.q).
/ Python parses this file (common/schema.py). Every table starts with time (UTC timestamp) and sym
/ (the subscription key: the instrument for market and trade tables, the account for account tables).
/ Column types: timestamp symbol float long int boolean date timespan; () holds strings.
/ Float columns may not hold NaN, and timestamps may not be null, unless the column is listed in
/ .mt.nullable for its table.

/ ---- market data -------------------------------------------------------------------------------
/ quote: market prices. price is the mark used for margin (last trade, else mid); vol is an annualised
/ volatility observation (implied or realised) when the source has one.
quote:([]time:`timestamp$();sym:`symbol$();bid:`float$();ask:`float$();price:`float$();size:`float$();vol:`float$();src:`symbol$())
.mt.nullable.quote:`bid`ask`size`vol

/ settle: settlement (official closing) prices; variation margin is marked from these.
settle:([]time:`timestamp$();sym:`symbol$();price:`float$();date:`date$())

/ ---- the firm's trading ----------------------------------------------------------------------------
/ fill: executions from the FIX drop copy. qty is signed (buy > 0). A trade cancel books a reversal row
/ (exectype `H, refexecid = the cancelled execid, qty negated); a correction books a reversal and a
/ replacement (exectype `G). session is the FIX session (SenderCompID); status `unknown when the
/ account or instrument is not in the reference data (the fill is still booked).
fill:([]time:`timestamp$();sym:`symbol$();account:`symbol$();qty:`float$();price:`float$();execid:`symbol$();orderid:`symbol$();exectype:`symbol$();refexecid:`symbol$();session:`symbol$();status:`symbol$())

/ position: start-of-day positions per account and instrument, with the price they were last settled at.
position:([]time:`timestamp$();sym:`symbol$();account:`symbol$();qty:`float$();price:`float$())

/ ---- reference data and collateral -------------------------------------------------------------
/ instrument: reference data. model is the margin model family (`var or `span); for derivatives
/ underlying, expiry, strike and putcall (`C or `P); adv is the average daily volume (shares or lots).
instrument:([]time:`timestamp$();sym:`symbol$();assetclass:`symbol$();ccy:`symbol$();multiplier:`float$();sector:`symbol$();ccp:`symbol$();model:`symbol$();underlying:`symbol$();expiry:`date$();strike:`float$();putcall:`symbol$();adv:`float$())
.mt.nullable.instrument:`expiry`strike`adv

/ account: the firm's clearing accounts. collateral posted at the CCP, cash buffer held by treasury,
/ threshold = requirement alert level, callpct = alert when the predicted call exceeds this share of
/ the buffer, imjump / imjumpmins = alert when IM rises more than imjump (a fraction) within imjumpmins.
account:([]time:`timestamp$();sym:`symbol$();desk:`symbol$();ccp:`symbol$();model:`symbol$();ccy:`symbol$();collateral:`float$();buffer:`float$();threshold:`float$();callpct:`float$();imjump:`float$();imjumpmins:`float$())

/ collateral: intraday collateral movements (amount > 0 posted to the CCP, < 0 withdrawn).
collateral:([]time:`timestamp$();sym:`symbol$();amount:`float$();kind:`symbol$();ref:`symbol$())

/ paramfile: a CCP parameter file took effect (SPAN risk parameters, VaR parameter sets).
paramfile:([]time:`timestamp$();sym:`symbol$();kind:`symbol$();path:();sha256:`symbol$())

/ ---- published by calc ------------------------------------------------------------------------------
/ margin: one row per account and model on every change. call is the predicted margin call
/ (requirement minus collateral, floored at 0); excess = collateral - requirement; seq is the sequence
/ number of the last input applied.
margin:([]time:`timestamp$();sym:`symbol$();model:`symbol$();ccy:`symbol$();im:`float$();vm:`float$();requirement:`float$();collateral:`float$();excess:`float$();call:`float$();var:`float$();es:`float$();seq:`long$())
.mt.nullable.margin:`var`es

/ alert: threshold crossings and data problems. kind e.g. `threshold`callbuffer`imjump`data`drift;
/ drivers: the top positions driving the requirement ("SYM:contribution;..."); stress: the loss of
/ the account's stress scenario where one was run.
alert:([]time:`timestamp$();sym:`symbol$();kind:`symbol$();severity:`symbol$();model:`symbol$();value:`float$();threshold:`float$();text:();drivers:();stress:`float$())
.mt.nullable.alert:`value`threshold`stress

/ ---- the CCP's official figures and the live parallel run (docs/reconcile.md) ----------------------
/ ccpmargin: the CCP's official requirement per account as it arrives (feedhandlers/statements, one
/ statement file per batch): kind `eod (end-of-day statement) or `intraday (an intraday call); cutoff:
/ the time the figure refers to; source: file:line of the statement row.
ccpmargin:([]time:`timestamp$();sym:`symbol$();ccp:`symbol$();kind:`symbol$();cutoff:`timestamp$();initial:`float$();maintenance:`float$();source:())

/ recon: one row per official figure and model (recon process): predicted = the im calc had published
/ for the account and model as of the cutoff (last margin row with time <= cutoff; null when none),
/ actual = the CCP's initial, diff = predicted - actual, pct = 100 * diff / actual; ccpseq = the
/ tickerplant seq of the ccpmargin batch it answers (with sym, ccp, kind, cutoff: the row's identity).
recon:([]time:`timestamp$();sym:`symbol$();ccp:`symbol$();kind:`symbol$();cutoff:`timestamp$();model:`symbol$();predicted:`float$();actual:`float$();diff:`float$();pct:`float$();ccpseq:`long$())
.mt.nullable.recon:`predicted`diff`pct

/ alertrule: alert rules as data (docs/notify.md). sym is the rule id; a row replaces the rule of that id.
/ scope `account`desk`all with target the account or desk name (` for all); kind `threshold (requirement >
/ level), `callbuffer (predicted call > level x the account's buffer), `stresscall (stress call > level x
/ buffer), `imjump (im > (1 + level) x its low within window minutes), `excess (excess < level), `recon (|pct| of a CCP figure's reconciliation > level, in %; the recon process); severity
/ `warn or `high; channels: notify channel names, comma-separated ("" = the routes of config/notify.toml);
/ enabled false switches it off; user who set it. For an account and kind the most specific enabled rule
/ applies (account, then desk, then all; the latest among equals); account.csv's thresholds are the
/ account rules ACCOUNT.KIND until a row of that id replaces them.
alertrule:([]time:`timestamp$();sym:`symbol$();scope:`symbol$();target:`symbol$();kind:`symbol$();level:`float$();window:`float$();severity:`symbol$();channels:();enabled:`boolean$();user:`symbol$())

/ ---- published by notify ------------------------------------------------------------------------------
/ notice: one row per delivery attempt of an alert to one channel (docs/notify.md). sym is the account;
/ alert identifies the alert row ("SEQ.ROW": the tickerplant seq of its batch and its row in it); kind
/ and severity are the alert's; channel is the configured channel name; status `sent (delivered),
/ `retry (failed, will be retried with backoff) or `failed (given up: a permanent error or the last
/ attempt); attempts counts the attempts so far; error is the reason of a failure ("" when sent); idem
/ is the idempotency key the receiver saw (alert/channel) to drop a repeat.
notice:([]time:`timestamp$();sym:`symbol$();alert:`symbol$();kind:`symbol$();severity:`symbol$();channel:`symbol$();status:`symbol$();attempts:`long$();error:();idem:`symbol$())

/ ack: an acknowledgement of an account's alert episode (docs/notify.md): sym the account, kind the
/ alert kind (` for every open episode of the account), user who acknowledged it (time: when), note
/ free text. notify stops the reminders of the episodes it acknowledges.
ack:([]time:`timestamp$();sym:`symbol$();kind:`symbol$();user:`symbol$();note:())
