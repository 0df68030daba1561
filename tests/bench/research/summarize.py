import json, sys
rows = [json.loads(l) for l in open(__import__('os').path.join(__import__('os').path.dirname(__file__), 'runs.jsonl'))]
V = ['L2', 'cos', 'pcaw', 'pcaw+l2n', 'bits>med,ham', 'cos +aQE10', 'cos +DBA10+aQE10', 'pcaw+l2n +aQE10', 'pcaw+l2n +DBA10+aQE10']
print('| tag | ds | config | ep | train s | dim | test MSE | ' + ' | '.join(V) + ' | enc us (b1) |')
print('|' + '---|' * (9 + len(V)))
for r in rows:
    a = r['args']
    cfg = f"{a['arch']} w{a['width']} code{a['code']} {a['act']}{' BN' if a['bn'] else ''} {a['loss']} {a['opt']} lr{a['lr']} bs{a['bs']} noise {a['noise']}" + (f" shift{a['shift']}" if a['shift'] else '') + (f" erase{a['erase']}" if a['erase'] else '') + (f" codeact {a['code_act']}" if a['code_act'] != 'linear' else '') + (f" seed{a['seed']}" if a['seed'] else '')
    cells = []
    for v in V:
        m = r['res'].get(v)
        cells.append(f"{m['mAP']:.3f} / {m['P10']:.3f}" if m else '-')
    print(f"| {a['tag']} | {a['ds']} | {cfg} | {r['epochs']} | {r['train_s']:.0f} | {r['dim']} | {r['test_mse']:.4f} | " + ' | '.join(cells) + f" | {r['enc_us_b1']} |")
    if r.get('hist'):
        print('|  | | curve: ' + '; '.join(h[1].split(' t ')[0].replace('ep ', 'ep') + ' ' + h[1].split(' ')[-1] for h in r['hist']) + ' |' + ' |' * (6 + len(V)))
