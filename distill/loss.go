package distill

import "math"

// lossFunc compares a query's student scores s with the teacher's t over
// the same candidates, at temperature temp. It returns the loss and writes
// dL/ds into grad (len(s)).
type lossFunc func(t, s []float32, temp float64, grad []float64) float64

// lossFuncs are the similarity functions of the Distill-VQ paper (Table 3),
// indexed by LossKind.
var lossFuncs = [...]lossFunc{
	ListNet:   listNet,
	KL:        klStudentTeacher,
	MSE:       mse,
	MarginMSE: marginMSE,
	RankNet:   weightedRankNet,
}

// softmax writes softmax(v/temp) into p and returns log of its normaliser's
// scale so callers can form log-probabilities: log p_i = v_i/temp - lse.
func softmax(v []float32, temp float64, p []float64) (lse float64) {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, float64(x)/temp)
	}
	var sum float64
	for i, x := range v {
		p[i] = math.Exp(float64(x)/temp - mx)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return mx + math.Log(sum)
}

// listNet is the cross-entropy H(Φt, Φs) = -Σ Φt log Φs, the paper's best
// loss; dL/ds_j = (Φs_j - Φt_j)/T.
func listNet(t, s []float32, temp float64, grad []float64) float64 {
	pt := make([]float64, len(t))
	softmax(t, temp, pt)
	lse := softmax(s, temp, grad) // grad holds Φs for now
	var loss float64
	for i := range s {
		loss -= pt[i] * (float64(s[i])/temp - lse)
		grad[i] = (grad[i] - pt[i]) / temp
	}
	return loss
}

// klStudentTeacher is KL(Φs ‖ Φt) = Σ Φs (log Φs - log Φt).
func klStudentTeacher(t, s []float32, temp float64, grad []float64) float64 {
	pt := make([]float64, len(t))
	lt := softmax(t, temp, pt)
	ls := softmax(s, temp, grad)
	var loss float64
	logRatio := make([]float64, len(s))
	for i := range s {
		logRatio[i] = (float64(s[i])/temp - ls) - (float64(t[i])/temp - lt)
		loss += grad[i] * logRatio[i]
	}
	for i := range s {
		grad[i] = grad[i] * (logRatio[i] - loss) / temp
	}
	return loss
}

// mse is the mean squared difference of the scores themselves.
func mse(t, s []float32, _ float64, grad []float64) float64 {
	n := float64(len(s))
	var loss float64
	for i := range s {
		d := float64(s[i] - t[i])
		loss += d * d / n
		grad[i] = 2 * d / n
	}
	return loss
}

// marginMSE matches score margins to the teacher's best candidate:
// mean_j ((s_0 - s_j) - (t_0 - t_j))^2, with 0 the teacher's top candidate.
func marginMSE(t, s []float32, _ float64, grad []float64) float64 {
	top := 0
	for i := range t {
		if t[i] > t[top] {
			top = i
		}
	}
	n := float64(len(s) - 1)
	clear(grad)
	if n == 0 {
		return 0
	}
	var loss float64
	for j := range s {
		if j == top {
			continue
		}
		d := float64((s[top] - s[j]) - (t[top] - t[j]))
		loss += d * d / n
		grad[top] += 2 * d / n
		grad[j] -= 2 * d / n
	}
	return loss
}

// weightedRankNet is -Σ_{t_i > t_j} (t_i - t_j) log σ((s_i - s_j)/T),
// normalised by the number of candidates.
func weightedRankNet(t, s []float32, temp float64, grad []float64) float64 {
	clear(grad)
	n := float64(len(s))
	var loss float64
	for i := range s {
		for j := range s {
			w := float64(t[i] - t[j])
			if w <= 0 {
				continue
			}
			z := float64(s[i]-s[j]) / temp
			// -log σ(z) = log(1 + e^-z), computed stably.
			loss += w * softplus(-z) / n
			g := -w * sigmoid(-z) / temp / n
			grad[i] += g
			grad[j] -= g
		}
	}
	return loss
}

func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
