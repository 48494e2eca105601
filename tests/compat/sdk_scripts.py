"""The same six calls from each server SDK, as scripts run by the SDK's own interpreter.

Every script reads ``HOST`` (where to send), ``WRITE_KEY`` and ``PREFIX`` (each message id is
``PREFIX-<call>``, so a test finds its own rows and knows each id in advance) from the
environment, sends identify / track / page / screen / group / alias, flushes, and prints a JSON
object with the delivery errors the SDK reported (``{"errors": [...]}``): an SDK that silently
gave up shows up there, or as a missing row. Retry settings are the SDKs' defaults: the retry
tests are about what a user gets without tuning anything.
"""

from __future__ import annotations

CALLS = ("identify", "track", "page", "screen", "group", "alias")

# segment-analytics-python and rudder-sdk-python share an interface (the latter is a fork).
_PYTHON = """
import json, os
import {module} as analytics

analytics.write_key = os.environ["WRITE_KEY"]
analytics.{host_attr} = os.environ["HOST"]
errors = []
analytics.on_error = lambda error, batch: errors.append(repr(error))
p = os.environ["PREFIX"]
ctx = {{"app": {{"name": "compat", "version": "1.0"}}}}
analytics.identify(user_id="u-py", traits={{"email": "py@example.com"}}, context=ctx,
                   message_id=p + "-identify")
analytics.track(user_id="u-py", event="Order Completed", properties={{"revenue": 9.5}},
                context=ctx, message_id=p + "-track")
analytics.page(user_id="u-py", category="Docs", name="Install", properties={{"path": "/docs"}},
               context=ctx, message_id=p + "-page")
analytics.screen(user_id="u-py", category="App", name="Home", properties={{"tab": 1}},
                 context=ctx, message_id=p + "-screen")
analytics.group(user_id="u-py", group_id="g-py", traits={{"name": "Acme"}}, context=ctx,
                message_id=p + "-group")
analytics.alias(previous_id="anon-py", user_id="u-py", context=ctx, message_id=p + "-alias")
analytics.flush()
analytics.shutdown()
print(json.dumps({{"errors": errors}}))
"""

PYTHON_SCRIPTS = {
    "segment": _PYTHON.format(module="segment.analytics", host_attr="host"),
    "rudderstack": _PYTHON.format(module="rudderstack.analytics", host_attr="dataPlaneUrl"),
}

_NODE_CALLS = """
const p = process.env.PREFIX;
const errors = [];
const ctx = { app: { name: 'compat', version: '1.0' } };
function calls(a) {
  a.identify({ userId: 'u-node', traits: { email: 'node@example.com' }, context: ctx,
               messageId: p + '-identify' });
  a.track({ userId: 'u-node', event: 'Order Completed', properties: { revenue: 9.5 },
            context: ctx, messageId: p + '-track' });
  a.page({ userId: 'u-node', category: 'Docs', name: 'Install', properties: { path: '/docs' },
           context: ctx, messageId: p + '-page' });
  a.screen({ userId: 'u-node', name: 'Home', properties: { tab: 1 }, context: ctx,
             messageId: p + '-screen' });
  a.group({ userId: 'u-node', groupId: 'g-node', traits: { name: 'Acme' }, context: ctx,
            messageId: p + '-group' });
  a.alias({ previousId: 'anon-node', userId: 'u-node', context: ctx, messageId: p + '-alias' });
}
"""

NODE_SCRIPTS = {
    "segment": _NODE_CALLS
    + """
const { Analytics } = require('@segment/analytics-node');
const a = new Analytics({ writeKey: process.env.WRITE_KEY, host: process.env.HOST,
                          flushAt: 6, flushInterval: 200 });
a.on('error', (err) => errors.push(String(err && (err.reason || err.message || err))));
calls(a);
a.closeAndFlush({ timeout: 50000 }).then(() => console.log(JSON.stringify({ errors })));
""",
    "rudderstack": _NODE_CALLS
    + """
const Analytics = require('@rudderstack/rudder-sdk-node');
const a = new Analytics(process.env.WRITE_KEY, {
  dataPlaneUrl: process.env.HOST, flushAt: 6, flushInterval: 200, logLevel: 'off',
  errorHandler: (err) => errors.push(String(err)) });
calls(a);
a.flush().then(() => console.log(JSON.stringify({ errors })),
               (err) => { errors.push(String(err)); console.log(JSON.stringify({ errors })); });
""",
}
