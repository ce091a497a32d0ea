/ margintick: follow margin and alert updates from a q session, as a kdb+tick subscriber does.
/ q q/sub.q [-gw host:port] [-user u] [-pass p] [-accounts FUND1,FUND2]
/ The gateway answers .u.sub like a tickerplant and then pushes (`upd;table;data) for every new row.
\l q/schema.q
o:.Q.opt .z.x
gw:$[`gw in key o;first o`gw;"127.0.0.1:5010"]
cred:$[`user in key o;first[o`user],":",first o`pass;"demo:demo"]
accts:$[`accounts in key o;`$"," vs first o`accounts;`]
upd:{[t;x] t insert x; if[t~`alert; -1 string[.z.p]," ALERT ",raze string[x`sym],": ",raze x`text]}
h:hopen`$":",gw,":",cred
h(`.u.sub;`margin;accts)
h(`.u.sub;`alert;accts)
/ the latest margin per account and model, as the gateway's margin API gives it
show h(`margin;accts)
