import time, jax, numpy as np
import meanfield, empirical
for norm in ("pre","post",None):
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=4, width=64,
                          arch=meanfield.Transformer(tokens=16, norm=norm, heads=2))
  t=time.time()
  ds = empirical.sweep(jax.random.key(0), network=net, n_seeds=8, q_input=1.0, c_input=0.2, progress=False)
  th = empirical.theory(ds)
  print(norm, time.time()-t)
  print(ds.q.mean("seed").values, th.q.values)
  print(ds.c.mean("seed").values, ds.c.std("seed").values, th.c.values)
  print(ds.stable_rank.mean("seed").values, ds.entropy.mean("seed").values, np.log(16), ds.grad_x2.mean("seed").values)
