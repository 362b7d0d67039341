"""Theory: mean-field signal propagation in deep networks at initialization.

Enable 64-bit precision (needed for ~1e-10 accuracy) with
``jax.config.update("jax_enable_x64", True)``, the environment variable
``JAX_ENABLE_X64=1``, or the context manager ``with jax.enable_x64(True):``.
This package never changes JAX flags itself.
"""

from meanfield.activations import Activation, activation, activation_names
from meanfield.network import MLP, Network
from meanfield.maps import (Propagation, c_map, chi_1, post_activation_variance, propagate, q_map,
                            q_map_slope)
from meanfield.fixed_points import FixedPoint, fixed_point, q_star
from meanfield.spectrum import (JacobianMoments, JacobianSpectrum, jacobian_moments,
                                 jacobian_spectrum, jacobian_spectrum_edge)
from meanfield.depth import DepthScales, depth_scales, gradient_depth_scale
from meanfield.phase import CriticalLine, critical_line, critical_sigma_w2, phase_diagram
from meanfield.initialise import CriticalInit, critical_init
from meanfield.transforms import (ActivationTransform, dks_transform, residual_subnet_max,
                                  tat_transform)
from meanfield.finite_width import (FiniteWidth, finite_width_gradient, finite_width_jacobian,
                                    finite_width_q)
from meanfield.tangent import ntk
from meanfield.conv import Conv
from meanfield.rnn import RNN
from meanfield.transformer import Transformer
