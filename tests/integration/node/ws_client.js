// node `ws` client for test_http.py: connects through the relay to a WebSocket backend
// (sub-protocol, text, binary, close code), prints what it saw as JSON. Usage:
//   node ws_client.js ws://127.0.0.1:PORT/path HOST
'use strict';
const WebSocket = require('ws');

const [url, host] = process.argv.slice(2);
const res = {};
const ws = new WebSocket(url, ['chat.v1', 'chat.v2'], { headers: { Host: host } });
const timer = setTimeout(() => { console.error('timeout'); process.exit(2); }, 20000);
ws.on('open', () => {
  res.protocol = ws.protocol;
  ws.send('hi from node');
});
ws.on('message', (data, isBinary) => {
  if (!isBinary) {
    res.text = data.toString();
    ws.send(Buffer.from([...Array(256).keys()]));
  } else {
    res.binary = [...data];
    ws.send('bye');
  }
});
ws.on('close', (code, reason) => {
  res.code = code;
  res.reason = reason.toString();
  clearTimeout(timer);
  console.log(JSON.stringify(res));
});
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
