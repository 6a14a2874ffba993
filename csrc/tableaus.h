// Butcher tableaus of every Runge-Kutta method node_ext provides: the single source of the
// coefficients. The C++ solver reads them through find_tableau(); Python reads them through
// node_ext._C.tableau() or, when the extension is not built, by parsing this file
// (node_ext/reference/tableaus.py), so keep the format below: one `inline constexpr double`
// array per line group, decimal literals that round-trip to the exact double, one table row per
// method in kTableaus.
//
// Conventions (all arrays are row-major):
//   c[s]                 stage times as fractions of the step.
//   a[s*(s-1)/2]         strictly lower triangle of A, row i holds a[i][0..i-1].
//   b[s]                 weights of the propagated solution  y1 = y0 + h * sum_j b_j k_j.
//   b_err[s]             error weights: (propagated - embedded solution) = h * sum_j b_err_j k_j.
//   fsal                 the last stage is f(t0 + h, y1) (its row of A equals b), so it is
//                        the next step's first stage.
//   order                the exponent used by the step-size controller, factor ~ err^(-1/order),
//                        with torchdiffeq's values (its Dopri5 uses 5, Bosh3 3, ...).
//   dense                continuous extension y(t0 + theta h) = y0 + h * sum_j w_j(theta) K_j with
//                        w_j(theta) = sum_p dense[j][p] theta^(p+1). K_j are the stages, followed
//                        by f(t1, y1) when the method is not FSAL and the extension uses it.
//                        Linear and Hermite extensions are derived from b (see dense_output.h).
#pragma once

#include <string_view>

namespace node_ext {
namespace tableau_data {

// Fixed-grid methods (torchdiffeq's definitions; rk4 is Kutta's 3/8 rule).
// euler
inline constexpr double euler_c[] = {0.0};
inline constexpr double euler_b[] = {1.0};
// midpoint
inline constexpr double midpoint_c[] = {0.0, 0.5};
inline constexpr double midpoint_a[] = {0.5};
inline constexpr double midpoint_b[] = {0.0, 1.0};
// heun2
inline constexpr double heun2_c[] = {0.0, 1.0};
inline constexpr double heun2_a[] = {1.0};
inline constexpr double heun2_b[] = {0.5, 0.5};
// heun3
inline constexpr double heun3_c[] = {0.0, 0.3333333333333333, 0.6666666666666666};
inline constexpr double heun3_a[] = {0.3333333333333333, 0.0, 0.6666666666666666};
inline constexpr double heun3_b[] = {0.25, 0.0, 0.75};
// rk4
inline constexpr double rk4_c[] = {0.0, 0.3333333333333333, 0.6666666666666666, 1.0};
inline constexpr double rk4_a[] = {0.3333333333333333, -0.3333333333333333, 1.0, 1.0, -1.0, 1.0};
inline constexpr double rk4_b[] = {0.125, 0.375, 0.375, 0.125};
// adaptive_heun
inline constexpr double adaptive_heun_c[] = {0.0, 1.0};
inline constexpr double adaptive_heun_a[] = {1.0};
inline constexpr double adaptive_heun_b[] = {0.5, 0.5};
inline constexpr double adaptive_heun_b_err[] = {-0.5, 0.5};
// fehlberg2
inline constexpr double fehlberg2_c[] = {0.0, 0.5, 1.0};
inline constexpr double fehlberg2_a[] = {0.5, 0.00390625, 0.99609375};
inline constexpr double fehlberg2_b[] = {0.001953125, 0.99609375, 0.001953125};
inline constexpr double fehlberg2_b_err[] = {-0.001953125, 0.0, 0.001953125};
// bosh3
inline constexpr double bosh3_c[] = {0.0, 0.5, 0.75, 1.0};
inline constexpr double bosh3_a[] = {0.5, 0.0, 0.75, 0.2222222222222222, 0.3333333333333333, 0.4444444444444444};
inline constexpr double bosh3_b[] = {0.2222222222222222, 0.3333333333333333, 0.4444444444444444, 0.0};
inline constexpr double bosh3_b_err[] = {-0.06944444444444445, 0.08333333333333333, 0.1111111111111111, -0.125};
// dopri5
inline constexpr double dopri5_c[] = {0.0, 0.2, 0.3, 0.8, 0.8888888888888888, 1.0, 1.0};
inline constexpr double dopri5_a[] = {0.2, 0.075, 0.225, 0.9777777777777777, -3.7333333333333334, 3.5555555555555554, 2.9525986892242035, -11.595793324188385, 9.822892851699436, -0.2908093278463649, 2.8462752525252526, -10.757575757575758, 8.906422717743473, 0.2784090909090909, -0.2735313036020583, 0.09114583333333333, 0.0, 0.44923629829290207, 0.6510416666666666, -0.322376179245283, 0.13095238095238096};
inline constexpr double dopri5_b[] = {0.09114583333333333, 0.0, 0.44923629829290207, 0.6510416666666666, -0.322376179245283, 0.13095238095238096, 0.0};
inline constexpr double dopri5_b_err[] = {0.0008217592592592593, 0.0, -0.0028351801936707596, 0.024652777777777777, -0.03390919811320755, 0.027936507936507936, -0.016666666666666666};
// tsit5
inline constexpr double tsit5_c[] = {0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0};
inline constexpr double tsit5_a[] = {0.161, -0.008480655492356989, 0.335480655492357, 2.8971530571054935, -6.359448489975075, 4.3622954328695815, 5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525, 5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.02826905039406838, 0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774};
inline constexpr double tsit5_b[] = {0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774, 0.0};
inline constexpr double tsit5_b_err[] = {0.001780011052225777, 0.0008164344596567469, -0.007880878010261995, 0.1447110071732629, -0.5823571654525552, 0.45808210592918697, -0.015151515151515152};
// dopri8
inline constexpr double dopri8_c[] = {0.0, 0.05555555555555555, 0.08333333333333333, 0.125, 0.3125, 0.375, 0.1475, 0.465, 0.5648654513822595, 0.65, 0.9246562776405044, 1.0, 1.0};
inline constexpr double dopri8_a[] = {0.05555555555555555, 0.020833333333333332, 0.0625, 0.03125, 0.0, 0.09375, 0.3125, 0.0, -1.171875, 1.171875, 0.0375, 0.0, 0.0, 0.1875, 0.15, 0.04791013711111111, 0.0, 0.0, 0.11224871277777777, -0.02550567377777778, 0.012846823888888888, 0.01691798978729228, 0.0, 0.0, 0.3878482784860432, 0.03597736985150033, 0.19697021421566607, -0.17271385234050185, 0.0690957533591923, 0.0, 0.0, -0.6342479767288541, -0.16119757522460407, 0.13865030945882525, 0.9409286140357562, 0.21163632648194397, 0.1835569968390454, 0.0, 0.0, -2.4687680843155926, -0.29128688781630047, -0.026473020233117376, 2.8478387641928005, 0.2813873314698498, 0.12374489986331466, -1.2154248173958881, 0.0, 0.0, 16.672608665945774, 0.915741828416818, -6.056605804357471, -16.00357359415618, 14.849303086297663, -13.371575735289849, 5.134182648179638, 0.25886091643826425, 0.0, 0.0, -4.774485785489205, -0.4350930137770325, -3.0494833320722416, 5.5779200399360995, 6.15583158986104, -5.062104586736939, 2.193926173180679, 0.13462799865933495, 0.8224275996265075, 0.0, 0.0, -11.658673257277664, -0.7576221166909362, 0.7139735881595816, 12.075774986890057, -2.127659113920403, 1.9901662070489554, -0.23428647154404028, 0.17589857770794226, 0.0};
inline constexpr double dopri8_b[] = {0.041747491141530244, 0.0, 0.0, 0.0, 0.0, -0.05545232861123931, 0.2393128072011801, 0.703510669403443, -0.7597596138144609, 0.6605630309222863, 0.15818748251012332, -0.2381095387528628, 0.25};
inline constexpr double dopri8_b_err[] = {0.012194277465176748, 0.0, 0.0, 0.0, 0.0, 0.7731539478765578, -0.07192809284993823, -1.763834521196444, 1.787182038027448, -0.7829855527544889, 0.07877188662899605, -0.28255398319730723, 0.25};

// Continuous extensions.
// dopri5: Dormand & Prince's 4th-order dense output (Hairer, Norsett & Wanner, Solving ODEs I, II.6).
// tsit5: Tsitouras (2011), the 4th-order interpolant of the paper's appendix, expanded in theta.
// dopri8: the degree-6 extension torchdiffeq ships for its 8(7) pair (it evaluates it only at theta = 1/2);
//         a 5th-order continuous extension (test_tableaus checks its order conditions).
inline constexpr double dopri5_dense[] = {1.0, -2.8535800653862835, 3.0717434641059005, -1.1270175653862835,
    0.0, 0.0, 0.0, 0.0,
    0.0, 4.023133379230305, -6.249321565289, 2.675424484351598,
    0.0, -3.7324019615885042, 10.068970589843675, -5.685526961588504,
    0.0, 2.5548038301849423, -6.399112377351017, 3.5219323679207912,
    0.0, -1.3744241142186024, 3.272657752246729, -1.7672812570757455,
    0.0, 1.3824689317781436, -3.764937863556287, 2.382468931778144};
inline constexpr double tsit5_dense[] = {1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216,
    0.0, 0.13169999999999998, -0.2234, 0.1017,
    0.0, 3.930296236894751, -5.941033872131505, 2.490627285651253,
    0.0, -12.411077166933676, 30.338188630282318, -16.548102889244902,
    0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928,
    0.0, -27.896526289197286, 65.09189467479368, -34.87065786149661,
    0.0, 1.5, -4.0, 2.5};
inline constexpr double dopri8_dense[] = {1.0, -6.6910181737837595, 19.999006933368396, -30.061056828966645, 22.139650499809406, -6.34483493928604,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, -7.6142658045872675, 52.227353279294555, -121.49996277313346, 116.44221495503422, -39.61079198522025,
    0.0, 10.728139263042886, -46.89191641810936, 83.17210046398478, -67.14513188259572, 20.376121380879145,
    0.0, 0.5526637063753649, -0.18908932250105956, 9.572450755599366, -16.56722435274965, 7.334709882679536,
    0.0, 4.218656262566515, -35.70759759462221, 87.84060576772056, -89.9916014847245, 32.88017743524592,
    0.0, -0.6627209125361597, 6.273644808324035, -17.415210777076297, 22.623748964853284, -10.158899052642676,
    0.0, -1.2636789001135462, 10.316088127245076, -28.590328951479098, 32.23623401673554, -12.540126809878256,
    0.0, 5.410603789859042, -34.76507698666118, 81.66309505843414, -82.10203154883598, 29.555300148451604,
    0.0, -7.032137906794574, 47.745797107822554, -114.93752913770093, 116.26621857911195, -41.79234864243906,
    0.0, 2.3537586759714983, -19.008209934160803, 50.255836422617605, -53.90207774663854, 20.300692582210083};

}  // namespace tableau_data

enum class DenseKind { Linear, Hermite, Polynomial };

struct Tableau {
  const char* name;
  int stages;
  int order;
  bool adaptive;
  bool fsal;
  const double* c;
  const double* a;      // nullptr when stages == 1
  const double* b;
  const double* b_err;  // nullptr for fixed-grid methods
  DenseKind dense;
  int dense_terms;      // rows of `dense` (Polynomial only)
  int dense_degree;     // columns of `dense` (Polynomial only)
  const double* dense_poly;
  const char* reference;
};

// clang-format off
inline constexpr Tableau kTableaus[] = {
  {"euler", 1, 1, false, false, tableau_data::euler_c, nullptr, tableau_data::euler_b, nullptr, DenseKind::Linear, 0, 0, nullptr, "Euler (1768)"},
  {"midpoint", 2, 2, false, false, tableau_data::midpoint_c, tableau_data::midpoint_a, tableau_data::midpoint_b, nullptr, DenseKind::Linear, 0, 0, nullptr, "Runge (1895)"},
  {"heun2", 2, 2, false, false, tableau_data::heun2_c, tableau_data::heun2_a, tableau_data::heun2_b, nullptr, DenseKind::Linear, 0, 0, nullptr, "Heun (1900)"},
  {"heun3", 3, 3, false, false, tableau_data::heun3_c, tableau_data::heun3_a, tableau_data::heun3_b, nullptr, DenseKind::Linear, 0, 0, nullptr, "Heun (1900)"},
  {"rk4", 4, 4, false, false, tableau_data::rk4_c, tableau_data::rk4_a, tableau_data::rk4_b, nullptr, DenseKind::Linear, 0, 0, nullptr, "Kutta (1901), 3/8 rule"},
  {"adaptive_heun", 2, 2, true, false, tableau_data::adaptive_heun_c, tableau_data::adaptive_heun_a, tableau_data::adaptive_heun_b, tableau_data::adaptive_heun_b_err, DenseKind::Hermite, 0, 0, nullptr, "Heun-Euler 2(1)"},
  {"fehlberg2", 3, 2, true, false, tableau_data::fehlberg2_c, tableau_data::fehlberg2_a, tableau_data::fehlberg2_b, tableau_data::fehlberg2_b_err, DenseKind::Hermite, 0, 0, nullptr, "Fehlberg (1969), RKF1(2)"},
  {"bosh3", 4, 3, true, true, tableau_data::bosh3_c, tableau_data::bosh3_a, tableau_data::bosh3_b, tableau_data::bosh3_b_err, DenseKind::Hermite, 0, 0, nullptr, "Bogacki & Shampine (1989)"},
  {"dopri5", 7, 5, true, true, tableau_data::dopri5_c, tableau_data::dopri5_a, tableau_data::dopri5_b, tableau_data::dopri5_b_err, DenseKind::Polynomial, 7, 4, tableau_data::dopri5_dense, "Dormand & Prince (1980)"},
  {"tsit5", 7, 5, true, true, tableau_data::tsit5_c, tableau_data::tsit5_a, tableau_data::tsit5_b, tableau_data::tsit5_b_err, DenseKind::Polynomial, 7, 4, tableau_data::tsit5_dense, "Tsitouras (2011)"},
  {"dopri8", 13, 8, true, false, tableau_data::dopri8_c, tableau_data::dopri8_a, tableau_data::dopri8_b, tableau_data::dopri8_b_err, DenseKind::Polynomial, 14, 6, tableau_data::dopri8_dense, "Prince & Dormand (1981), RK8(7)13M"},
};
// clang-format on

inline constexpr int kNumTableaus = sizeof(kTableaus) / sizeof(kTableaus[0]);

// The tableau called `name`, or nullptr.
inline const Tableau* find_tableau(std::string_view name) {
  for (const Tableau& t : kTableaus) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

// Entry (i, j), j < i, of the strictly lower triangular A.
inline double tableau_a(const Tableau& t, int i, int j) { return t.a[i * (i - 1) / 2 + j]; }

}  // namespace node_ext
